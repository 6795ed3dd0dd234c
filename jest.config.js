/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }],
    // @tus/server 2 and its dependencies ship only ES modules; the built relay require()s them
    // natively (Node >= 20.19), while jest on Node 20 needs them compiled to CommonJS.
    '^.+\\.m?js$': [
      'ts-jest',
      {
        tsconfig: { allowJs: true, module: 'commonjs', target: 'ES2022', esModuleInterop: true },
        isolatedModules: true,
      },
    ],
  },
  transformIgnorePatterns: ['/node_modules/(?!(@tus|srvx)/)'],
  moduleFileExtensions: ['ts', 'js', 'mjs', 'cjs', 'json'],
  globalSetup: '<rootDir>/test/global-setup.ts',
  testMatch: ['<rootDir>/test/**/*.test.ts'],
  testTimeout: 60000,
  // Integration tests move hundreds of MiB over loopback; two at a time keeps a 2-core box honest.
  maxWorkers: 2,
};
