/** api.video's problem+json shape, as PROTOCOL.md shows it. */
export interface ApiProblem {
  type: string;
  title: string;
  status: number;
  name?: string;
}

export class EmulatorProblem extends Error {
  constructor(
    readonly status: number,
    readonly typeName: string,
    title: string,
    readonly field?: string,
  ) {
    super(title);
  }

  toJSON(): ApiProblem {
    return {
      type: `https://docs.api.video/reference/${this.typeName}`,
      title: this.message,
      status: this.status,
      ...(this.field ? { name: this.field } : {}),
    };
  }
}

export const badRequest = (typeName: string, title: string, field?: string) =>
  new EmulatorProblem(400, typeName, title, field);
