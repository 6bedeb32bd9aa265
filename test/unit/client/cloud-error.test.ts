import { describe, expect, it } from 'vitest';
import { describeCloudError } from '../../../src/client/cloud-error.js';

describe('describeCloudError', () => {
  it('gives the AWS SDK error name and status', () => {
    const e = Object.assign(new Error('Access Denied'), { name: 'AccessDenied', $metadata: { httpStatusCode: 403 } });
    expect(describeCloudError(e)).toBe('Access Denied (AccessDenied, HTTP 403)');
  });

  it('gives the Azure RestError code and status', () => {
    const e = Object.assign(new Error('The specified container does not exist.\nRequestId:abc'), {
      name: 'RestError',
      code: 'ContainerNotFound',
      statusCode: 404,
    });
    expect(describeCloudError(e)).toBe('The specified container does not exist. RequestId:abc (ContainerNotFound, HTTP 404)');
  });

  it('gives the GCS status and the inner messages, not the wrapper sentence', () => {
    const e = Object.assign(
      new Error(
        'Multiple errors occurred during the request. Please see the `errors` array for complete details.\n\n1. Forbidden\n2. <?xml version="1.0"?><Error/>',
      ),
      { code: 403 },
    );
    expect(describeCloudError(e)).toBe('1. Forbidden 2. <Error/> (HTTP 403)');
    const withErrors = Object.assign(new Error('x'), {
      code: 403,
      errors: [{ message: 'sa@p.iam does not have storage.objects.list access' }],
    });
    expect(describeCloudError(withErrors)).toBe('sa@p.iam does not have storage.objects.list access (HTTP 403)');
  });

  it('clips very long messages and passes plain errors through', () => {
    expect(describeCloudError(new Error('y'.repeat(500)))).toHaveLength(300);
    expect(describeCloudError(new Error('socket hang up'))).toBe('socket hang up');
    expect(describeCloudError('text')).toBe('text');
  });
});
