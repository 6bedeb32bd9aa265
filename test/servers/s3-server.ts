/**
 * A real S3 protocol server for the tests: fauxqs, in process, on 127.0.0.1 with an OS-assigned port,
 * with its gaps patched. One implementation serves the tests and the benchmarks (bench/lib, which is
 * compiled into dist/ and so cannot import from test/).
 */
export { createBucket, deleteBucket, startS3Server, type S3Server } from '../../bench/lib/s3-server.js';
