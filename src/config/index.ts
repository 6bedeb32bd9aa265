export * from './config.js';
export { parseDuration, durationFromYaml } from './duration.js';
export { expandEnv } from './env-expand.js';
export { isUrl, parseReplicaUrl, absolutePath, expandHome, cleanPath } from './replica-url.js';
export type { ParsedReplicaUrl } from './replica-url.js';
export { buildReplicaClient, replicaFromUrl } from './build-client.js';
