/**
 * The Litestream oracle harness (real Litestream v0.3.13 binary): one import for oracle tests.
 *
 *   litestream-process.ts   binary path, clean env, litestream.yml, LitestreamReplicator (awaitable log lines,
 *                           waitForUpload), litestreamCli/litestreamRestore, parseTable, positions/mtimes
 *   litestream-source-db.ts openSourceDb, userTableContent (digest of user tables), rowCount, textOf
 *   litestream-truth.ts     GroundTruth recorder, timing assumptions, truthAtIndex
 *   litestream-fixtures.ts  snapshot-only, multi-index, multi-generation and large-history replicas
 */
export * from './litestream-process.js';
export * from './litestream-source-db.js';
export * from './litestream-truth.js';
export * from './litestream-fixtures.js';
