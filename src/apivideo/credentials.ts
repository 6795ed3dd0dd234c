import type { Credentials } from './transport';

export class BasicCredentials implements Credentials {
  private readonly value: string;
  constructor(apiKey: string) {
    this.value = 'Basic ' + Buffer.from(`${apiKey}:`).toString('base64');
  }
  async header(): Promise<string> {
    return this.value;
  }
  refused(): boolean {
    return false;
  }
}

export interface TokenAnswer {
  access_token: string;
  refresh_token: string;
  expires_in: number;
}

export interface TokenSource {
  /** POST /auth/api-key. */
  login(signal?: AbortSignal): Promise<TokenAnswer>;
  /** POST /auth/refresh. */
  refresh(refreshToken: string, signal?: AbortSignal): Promise<TokenAnswer>;
}

/**
 * Bearer tokens from /auth/api-key, renewed ahead of expiry and after a 401. Concurrent callers
 * share one renewal: a burst of part uploads must not log in eight times.
 */
export class BearerCredentials implements Credentials {
  private current: { header: string; refreshToken: string; renewAt: number } | undefined;
  private renewal: Promise<string> | undefined;

  constructor(
    private readonly source: TokenSource,
    private readonly now: () => number = Date.now,
  ) {}

  async header(signal?: AbortSignal): Promise<string> {
    if (this.current && this.now() < this.current.renewAt) return this.current.header;
    this.renewal ??= this.renew(signal).finally(() => (this.renewal = undefined));
    return this.renewal;
  }

  refused(header: string): boolean {
    if (this.current?.header === header) this.current = { ...this.current, renewAt: 0 };
    return true;
  }

  private async renew(signal?: AbortSignal): Promise<string> {
    let answer: TokenAnswer | undefined;
    if (this.current)
      answer = await this.source.refresh(this.current.refreshToken, signal).catch(() => undefined);
    answer ??= await this.source.login(signal);
    // Renew at 90 % of the lifetime so a request never starts with a token about to lapse.
    const renewAt = this.now() + answer.expires_in * 900;
    this.current = {
      header: `Bearer ${answer.access_token}`,
      refreshToken: answer.refresh_token,
      renewAt,
    };
    return this.current.header;
  }
}
