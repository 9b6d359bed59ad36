"""One module per framework; each exposes ``make(spec) -> Runner`` (see :mod:`bench.workloads.common`)."""

FRAMEWORKS = ("jcnn", "stax", "linen", "nnx", "equinox", "haiku", "torch")
MODULES = {
    "jcnn": "bench.workloads.jcnn_wl",
    "stax": "bench.workloads.stax_wl",
    "linen": "bench.workloads.linen_wl",
    "nnx": "bench.workloads.nnx_wl",
    "equinox": "bench.workloads.equinox_wl",
    "haiku": "bench.workloads.haiku_wl",
    "torch": "bench.workloads.torch_wl",
}
