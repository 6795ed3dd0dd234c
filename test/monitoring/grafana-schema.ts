/**
 * Checks a dashboard against Grafana's own schema. @grafana/schema publishes it as TypeScript types
 * (generated from Grafana's CUE kinds), so the TypeScript compiler is the validator: the dashboard
 * is written out as a literal of type `Dashboard`, and each panel's options as a literal of its
 * panel plugin's types. Every diagnostic is a place where the dashboard and the schema disagree,
 * unknown properties included (object literals get excess-property checks).
 */
import { join } from 'node:path';
import ts from 'typescript';

/** Inside the repository, so that `@grafana/schema` resolves from its node_modules. */
const VIRTUAL = join(__dirname, '__dashboard-schema-check__.ts');
const SCHEMA = '@grafana/schema/dist/esm/raw/composable';
/** The panel plugins whose options the schema describes, and that the dashboard uses. */
const PANELS: Record<string, { options: string; custom?: string }> = {
  timeseries: {
    options: `import('${SCHEMA}/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen').Options`,
    custom: `import('${SCHEMA}/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen').FieldConfig`,
  },
  stat: { options: `import('${SCHEMA}/stat/panelcfg/x/StatPanelCfg_types.gen').Options` },
};

/**
 * The schema's enums are TypeScript enums, to which a JSON string cannot be assigned: `Literal<T>`
 * turns a string enum into the union of its values (`${E}`) and leaves the rest as it is.
 */
const PRELUDE = `type Literal<T> = T extends string
  ? \`\${T}\`
  : T extends readonly (infer U)[]
    ? Literal<U>[]
    : T extends object
      ? { [K in keyof T]: Literal<T[K]> }
      : T;`;

export interface SchemaProblem {
  message: string;
  /** The line of the dashboard's JSON the problem is on. */
  near: string;
}

/* eslint-disable @typescript-eslint/no-explicit-any -- a dashboard is untyped JSON until checked */
export function checkDashboard(dashboard: any): SchemaProblem[] {
  const json = (value: unknown) => JSON.stringify(value ?? {}, null, 2);
  const lines = [
    PRELUDE,
    `export const dashboard: Literal<import('@grafana/schema').Dashboard> = ${json(dashboard)};`,
  ];
  const panels: any[] = (dashboard.panels ?? []).flatMap((p: any) => [p, ...(p.panels ?? [])]);
  panels.forEach((panel, i) => {
    const types = PANELS[panel.type];
    if (!types) return;
    lines.push(`export const options${i}: Literal<${types.options}> = ${json(panel.options)};`);
    if (types.custom)
      lines.push(
        `export const custom${i}: Literal<${types.custom}> = ${json(panel.fieldConfig?.defaults?.custom)};`,
      );
  });
  const source = lines.join('\n');
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    // The package's types are reached through its `exports` map.
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (name, version, ...rest) =>
    name === VIRTUAL
      ? ts.createSourceFile(name, source, version)
      : getSourceFile.call(host, name, version, ...rest);
  host.fileExists = (name) => name === VIRTUAL || fileExists.call(host, name);
  host.readFile = (name) => (name === VIRTUAL ? source : readFile.call(host, name));
  const program = ts.createProgram([VIRTUAL], options, host);
  const sourceLines = source.split('\n');
  return ts.getPreEmitDiagnostics(program).map((d) => ({
    message: ts.flattenDiagnosticMessageText(d.messageText, '\n'),
    near:
      d.file?.fileName === VIRTUAL && d.start !== undefined
        ? sourceLines[d.file.getLineAndCharacterOfPosition(d.start).line]!.trim()
        : (d.file?.fileName ?? 'the compiler options'),
  }));
}
