// Lint for the whole repository: typescript-eslint's type-aware recommended rules (every .ts file is in
// tsconfig.json), with the two that catch a promise nobody awaits or handles made errors. Formatting is
// prettier's (npm run lint runs both); nothing here is about layout.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default defineConfig(
  { ignores: ['dist/', 'bench/out/', 'node_modules/', 'tmp/', 'demo/', '.cache/'] },
  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
      globals: globals.node,
    },
    rules: {
      // An unhandled rejection kills the process (Node's default); a forgotten await loses ordering.
      '@typescript-eslint/no-floating-promises': 'error',
      // An async function where a callback's result is ignored (an event listener, forEach) drops its rejection.
      '@typescript-eslint/no-misused-promises': 'error',
      // An async function with no await is how this code implements a Promise-returning interface (a
      // client's method, a test's async generator): not a mistake here.
      '@typescript-eslint/require-await': 'off',
      // `_name` marks what is unused on purpose (a destructured field left out, a required parameter).
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
    },
  },
  {
    // vitest's asymmetric matchers (expect.stringMatching, expect.any, expect.objectContaining) are typed
    // `any`; placing one inside an expected object is how a test says "a message like this".
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-unsafe-assignment': 'off' },
  },
  {
    // Plain JavaScript (the CLI's launcher, CommonJS test apps, the example, this file): no type information.
    files: ['**/*.js', '**/*.cjs', '**/*.mjs'],
    extends: [tseslint.configs.disableTypeChecked],
  },
  {
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs' },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
