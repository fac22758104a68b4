/**
 * Cluster metadata: CASPaxos registers whose acceptors are the voters of a
 * metadata configuration, changed only through joint configurations.
 *
 * @module
 */
export { Acceptor } from "./acceptor.ts";
export { Proposer, type ProposerOptions } from "./proposer.ts";
export {
  type AcceptorLink,
  type AcceptorState,
  type AcceptorStore,
  type Ballot,
  compareBallots,
  type ConfigHolder,
  NoQuorumError,
  NotJoinedError,
  type Register,
} from "./caspaxos.ts";
export {
  allVoters,
  type Candidate,
  configKey,
  desiredVoters,
  isQuorum,
  majority,
  type MetaConfig,
  parseConfig,
  quorumGroups,
  voterTarget,
} from "./config.ts";
export { AcceptorLog, openNodeAcceptorLog } from "./acceptor_log.ts";
export {
  acceptedKeys,
  type AcceptorIndex,
  acceptorMethods,
  fetchConfig,
  installConfig,
  rpcAcceptorLink,
} from "./meta_service.ts";
export {
  type KeyListingOptions,
  listChosenKeys,
  type ListedKeys,
  type VoterKeys,
} from "./key_listing.ts";
export { NodeConfig, type NodeConfigDisk, type NodeConfigState } from "./node_config.ts";
export { fileConfigDisk } from "./disk_env.ts";
export {
  type ConfigPeers,
  describeConfig,
  type ReconfigurationStatus,
  Reconfigurer,
  type VoterCandidate,
} from "./reconfigure.ts";
