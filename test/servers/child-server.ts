/** The child-process server starter; one implementation in bench/lib (compiled), shared with the benchmarks and the torture runner. */
export { startChildServer, type ChildServer, type ChildServerOptions } from '../../bench/lib/child-server.js';
