/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  transform: {
    // Transpile only, file by file: type checking is `npm run typecheck` (tsconfig's
    // isolatedModules makes it refuse what a per-file transpiler would get wrong). swc over
    // ts-jest's transpiler: 85 files in 0.15-0.25 s instead of 5.8-6.7 s, measured on this box.
    '^.+\\.ts$': [
      '@swc/jest',
      {
        swcrc: false,
        jsc: { parser: { syntax: 'typescript' }, target: 'es2022' },
        module: { type: 'commonjs' },
      },
    ],
    // @tus/server 2 and its dependencies ship only ES modules; the built relay require()s them
    // natively (Node >= 20.19), while jest on Node 20 needs them compiled to CommonJS.
    '^.+\\.m?js$': [
      'ts-jest',
      {
        tsconfig: {
          allowJs: true,
          module: 'commonjs',
          target: 'ES2022',
          esModuleInterop: true,
          isolatedModules: true,
        },
      },
    ],
  },
  transformIgnorePatterns: ['/node_modules/(?!(@tus|srvx)/)'],
  moduleFileExtensions: ['ts', 'js', 'mjs', 'cjs', 'json'],
  globalSetup: '<rootDir>/test/global-setup.ts',
  testMatch: ['<rootDir>/test/**/*.test.ts'],
  testTimeout: 60000,
  // Integration tests move tens of MiB over loopback; two workers keep a 2-core box busy without
  // starving the relays they start (measured: see README, "Tests").
  maxWorkers: 2,
};
