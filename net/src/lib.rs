//! kybernetes-net: the Network trait and LocalNetwork.
