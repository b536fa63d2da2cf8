"""modelward's development harness: a real local Kubernetes control plane and operator process.

Tests and the demo need a kube-apiserver that calls modelward's webhooks over TLS exactly as a
cluster would. No Docker is assumed: the binaries are built from the Go module proxy by
``hack/build-control-plane.sh`` (or taken from ``KUBEBUILDER_ASSETS``) and run as plain
processes, the way controller-runtime's envtest does.

    binaries          where kube-apiserver, etcd, kubectl and helm live; builds them if missing
    controlplane      LocalControlPlane: etcd + kube-apiserver on loopback, admin kubeconfig
    operator_process  OperatorProcess: ``modelward run`` as a subprocess, webhooks registered

Importing this package starts nothing and reads no environment: every side effect happens in
an explicit call.
"""
