/** Azurite (Azure Blob); one implementation in bench/lib (compiled), shared with the torture runner. */
export {
  AZURITE_ACCOUNT,
  AZURITE_KEY,
  createContainer,
  deleteContainer,
  startAbsServer,
  type AbsServer,
} from '../../bench/lib/abs-server.js';
