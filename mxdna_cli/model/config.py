"""ModelConfig: every hyperparameter of an MxDNA model in one dataclass, with named presets.

`base` is the paper's model (spec §1.2): the masked-LM model has 100,090,895 parameters. `small` is
sized to pretrain on a 2-core CPU in hours, `tiny` to run the test suite in seconds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field



class ConfigError(ValueError):
    """An impossible configuration or an unknown preset. The model knows nothing of the command line:
    whoever reads the configuration says whether it is bad usage (--preset) or bad data (a model card)."""


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 9
    hidden_size: int = 512
    num_heads: int = 16
    intermediate_size: int = 2048
    num_nucleotide_layers: int = 4
    num_token_layers: int = 16
    expert_kernel_sizes: tuple[int, ...] = tuple(range(1, 11))
    deformable_kernel_size: int = 3
    router_jitter: float = 0.01
    load_balancing_coef: float = 0.01
    layer_norm_eps: float = 1e-5
    expert_layer_norm_eps: float = 1e-6  # the checkpoint code's value inside the experts
    rope_theta: float = 10000.0
    initializer_range: float = 0.02
    classifier_dropout: float = 0.0
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if (self.hidden_size // self.num_heads) % 2:
            raise ConfigError("the attention head size must be even for rotary position embeddings")
        if 1 not in self.expert_kernel_sizes:
            raise ConfigError("expert_kernel_sizes must contain 1, or the basic units cannot tile every sequence")
        if self.deformable_kernel_size % 2 == 0:
            raise ConfigError("deformable_kernel_size must be odd")
        object.__setattr__(self, "expert_kernel_sizes", tuple(int(k) for k in self.expert_kernel_sizes))

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def num_experts(self) -> int:
        return len(self.expert_kernel_sizes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        return cls(**values)

    @classmethod
    def preset(cls, name: str) -> "ModelConfig":
        if name not in PRESETS:
            raise ConfigError(f"unknown model preset '{name}' (choose from {', '.join(PRESETS)})")
        return PRESETS[name]


# smallest first: the order `--preset` lists them in
PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(
        name="tiny",
        hidden_size=32,
        num_heads=4,
        intermediate_size=64,
        num_nucleotide_layers=1,
        num_token_layers=1,
    ),
    "small": ModelConfig(
        name="small",
        hidden_size=256,
        num_heads=8,
        intermediate_size=1024,
        num_nucleotide_layers=2,
        num_token_layers=4,
    ),
    # about 27.9 M parameters (float16 weights 56 MB, one file under 60 MB): the larger backbone
    # to pretrain where a GPU is lent (scripts/gpu_session.sh)
    "medium": ModelConfig(
        name="medium",
        hidden_size=384,
        num_heads=12,
        intermediate_size=1536,
        num_nucleotide_layers=2,
        num_token_layers=6,
    ),
    "base": ModelConfig(name="base"),
}


def expert_groups(kernel_size: int, hidden_size: int) -> int:
    """Groups of an expert's convolution: the divisor of hidden_size closest to the kernel size.

    Ties go to the smaller divisor; for d = 512 and kernels 1..10 this gives 1,2,2,4,4,4,8,8,8,8.
    """
    divisors = [g for g in range(1, hidden_size + 1) if hidden_size % g == 0]
    return min(divisors, key=lambda g: (abs(g - kernel_size), g))
