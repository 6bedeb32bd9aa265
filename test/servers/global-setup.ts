/** Starts the protocol servers once for the whole run and publishes their endpoints to the tests. */
import type { TestProject } from 'vitest/node';
import { startS3Server, type S3Server } from './s3-server.js';

let s3: S3Server | undefined;

export async function setup(project: TestProject): Promise<void> {
  s3 = await startS3Server();
  project.provide('s3Endpoint', s3.endpoint);
}

export async function teardown(): Promise<void> {
  await s3?.stop();
}

declare module 'vitest' {
  export interface ProvidedContext {
    s3Endpoint: string;
  }
}
