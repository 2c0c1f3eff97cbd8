//! kybernetes-controllers: ReplicaSet, Deployment, garbage collector, Endpoints, node lifecycle and namespace controllers, each a kube-runtime Controller.
