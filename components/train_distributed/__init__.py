"""Distributed training on a Kubernetes cluster as a Kubeflow Trainer v2 TrainJob (multi-node, multi-GPU)."""
