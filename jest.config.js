/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }],
  },
  moduleFileExtensions: ['ts', 'js', 'mjs', 'cjs', 'json'],
  globalSetup: '<rootDir>/test/global-setup.ts',
  testMatch: ['<rootDir>/test/**/*.test.ts'],
  testTimeout: 60000,
  // Integration tests move hundreds of MiB over loopback; two at a time keeps a 2-core box honest.
  maxWorkers: 2,
};
