import { rootCertificates } from 'node:tls';
import { Agent, EnvHttpProxyAgent, type Dispatcher } from 'undici';

export interface UpstreamNetwork {
  httpProxy?: string;
  httpsProxy?: string;
  noProxy?: string;
  /** Extra CA certificates (PEM) trusted for the upstream only, on top of Node's. */
  extraCa?: string[];
  timeouts?: { connectMs?: number; headersMs?: number; bodyMs?: number };
}

/**
 * One keep-alive pool per origin, with timeouts so a silent upstream cannot hold an upload forever;
 * through HTTP(S)_PROXY (CONNECT) when set, honouring NO_PROXY.
 */
export function upstreamDispatcher(network: UpstreamNetwork = {}): Dispatcher {
  const { timeouts = {} } = network;
  // Setting `ca` replaces Node's roots, so they are listed again with the extra ones.
  const tls = network.extraCa?.length ? { ca: [...rootCertificates, ...network.extraCa] } : {};
  const options = {
    connect: { timeout: timeouts.connectMs ?? 10_000, ...tls },
    headersTimeout: timeouts.headersMs ?? 120_000,
    bodyTimeout: timeouts.bodyMs ?? 120_000,
    keepAliveTimeout: 30_000,
    connections: 64,
  };
  if (!network.httpProxy && !network.httpsProxy) return new Agent(options);
  return new EnvHttpProxyAgent({
    ...options,
    httpProxy: network.httpProxy ?? '',
    httpsProxy: network.httpsProxy ?? network.httpProxy ?? '',
    noProxy: network.noProxy ?? '',
    requestTls: tls, // the origin's TLS, inside the CONNECT tunnel
  });
}
