/** The misbehaving HTTP proxy; one implementation in bench/lib (compiled), shared with the torture runner. */
export { startFaultProxy, type FaultMode, type FaultProxy, type RequestGate } from '../../bench/lib/fault-proxy.js';
