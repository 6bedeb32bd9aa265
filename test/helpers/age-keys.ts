/**
 * age X25519 key pairs for tests only (made with age-encryption's generateX25519Identity; they protect
 * nothing). `KEY` is the replica's pair, `OTHER` a pair that opens none of its objects.
 */
export const KEY = {
  identity: 'AGE-SECRET-KEY-1ZELTMZCNHP9X06T32GPT05E2X7Z5LDPV6AJSNLDLVHFFS0RQ0RCSMHS5T7',
  recipient: 'age1ttf77pgng3nppjdpmc8q9hmt4rxcfewxaa92qq6p8x0vw7fc4gxqr9z950',
} as const;

export const OTHER = {
  identity: 'AGE-SECRET-KEY-1DH92ZYJFAP90WK7E8CKDS8UT9J33Y52UZPHAH5DR7G4XUDS7D4LSMR2XN9',
  recipient: 'age1kv76uhj60cl49c82l50kx4mq6k8kufywhepzzm95zrwm0y5xlcjqzpujfr',
} as const;

/** The secret part of an identity (after the fixed prefix): what must never appear in any output. */
export function secretPart(identity: string): string {
  return identity.slice('AGE-SECRET-KEY-1'.length);
}
