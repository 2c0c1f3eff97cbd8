//! kybernetes-node: the node agent.
