// Lint: type-aware rules for the TypeScript sources and tests, plain rules for the scripts.
// Formatting is Prettier's (`npm run format:check`); import boundaries are scripts/check-structure.js.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

export default tseslint.config(
  // scripts/**/*.d.ts: declarations of script modules the tests import (no tsconfig of their own to lint them under).
  { ignores: ['dist/', 'node_modules/', 'firmware-protocol/c/', 'coverage/', 'scripts/**/*.d.ts'] },
  {
    files: ['**/*.ts'],
    extends: [js.configs.recommended, ...tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // A variable a closure reads before its one assignment (run.ts: the last-resort handler) cannot be const.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      // Tests read JSON that real processes printed (JSON.parse: any) and assert on it field by field: a wrong shape
      // fails the assertion itself. The contract tests validate the same output against the published schemas.
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
    },
  },
  {
    files: ['**/*.js'],
    extends: [js.configs.recommended],
    languageOptions: { globals: { ...globals.node } },
  },
);
