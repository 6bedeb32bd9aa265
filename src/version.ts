/** The version printed by `stn-replicate version`, and the Litestream release whose replica format we follow. */
export const VERSION = 'v0.1.0';
export const LITESTREAM_COMPAT_VERSION = 'v0.3.13';
