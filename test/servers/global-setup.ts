/** Starts the protocol servers once for the whole run and publishes their endpoints to the tests. */
import type { TestProject } from 'vitest/node';
import { startAbsServer, type AbsServer } from './abs-server.js';
import { startGcsServer, type GcsServer } from './gcs-server.js';
import { startS3Server, type S3Server } from './s3-server.js';

let s3: S3Server | undefined;
let abs: AbsServer | undefined;
let gcs: GcsServer | undefined;

export async function setup(project: TestProject): Promise<void> {
  [s3, abs, gcs] = await Promise.all([startS3Server(), startAbsServer(), startGcsServer()]);
  project.provide('s3Endpoint', s3.endpoint);
  project.provide('absEndpoint', abs.endpoint);
  project.provide('gcsEndpoint', gcs.endpoint);
}

export async function teardown(): Promise<void> {
  await Promise.all([s3?.stop(), abs?.stop(), gcs?.stop()]);
}

declare module 'vitest' {
  export interface ProvidedContext {
    s3Endpoint: string;
    absEndpoint: string;
    gcsEndpoint: string;
  }
}
