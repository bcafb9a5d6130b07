"""The precision and engine that run fastest on this CPU while keeping the answers.

What is fast depends on the processor, not on the model: bfloat16 matrix multiplies are faster
than fp32 with AMX tiles, and on AMD's AVX512-BF16, but not on every processor with bf16 dot
products, and slower without them (oneDNN converts to fp32). ParsBERT-base, 512 tokens, 2 threads,
docs/s fp32 -> bf16 at batch 4:

    Intel Xeon with AMX (native)              2.09 -> 9.26      bf16 4.4x
    Intel Xeon capped at AVX512_CORE_BF16     1.98 -> 1.55      bf16 0.78x
    AMD EPYC Zen 4, AVX512_CORE_BF16 (native) 1.74 -> 3.11      bf16 1.8x (batch 1: 1.95x); mT5-small beam 4: 1.6x
    Zen 4 capped at AVX512_CORE_VNNI          1.78 -> 0.81      bf16 0.45x
    Zen 4 capped at AVX2                      1.50 -> 0.41      bf16 0.27x

So ``dtype="auto"`` on the CPU is bfloat16 where oneDNN runs AMX, and on AMD processors with
AVX512-BF16 (Zen 4 and later); float32 elsewhere, Intel's AVX512-BF16 without AMX included
(the capped Xeon's kernels ran bf16 slower, and no such Intel processor was measured natively).
Torch's dynamic int8 (``quantize="int8"``) stays opt-in: on AMX bf16 is faster; on the Zen 4
it is faster still (4.15 docs/s at batch 1), but it runs through
``torch.ao.quantization``, which torch has deprecated, with one scale per weight matrix, and the
``fast`` extra's ONNX Runtime int8 (per-channel, 4.6 docs/s there) is what ``backend="auto"``
takes on such a processor anyway. Capabilities come from ``torch.cpu.get_capabilities()``, with
``/proc/cpuinfo`` as a fallback, capped by ``ONEDNN_MAX_CPU_ISA`` (or its older name
``DNNL_MAX_CPU_ISA``) when set, as oneDNN caps itself.

Example:
    >>> caps = CpuCapabilities(amx=True, avx512_bf16=True, avx512_vnni=True, avx512=True, avx2=True)
    >>> auto_cpu_choice("classifier", caps, isa_limit="AVX512_CORE_VNNI").dtype
    torch.float32
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from inference.devices import resolve_dtype

logger = logging.getLogger(__name__)

# oneDNN's instruction-set levels, oldest first (names as ONEDNN_MAX_CPU_ISA takes them).
ISA_LEVELS = (
    "SSE41",
    "AVX",
    "AVX2",
    "AVX2_VNNI",
    "AVX2_VNNI_2",
    "AVX512_CORE",
    "AVX512_CORE_VNNI",
    "AVX512_CORE_BF16",
    "AVX512_CORE_FP16",
    "AVX512_CORE_AMX",
    "AVX512_CORE_AMX_FP16",
    "AVX10_2_512",
    "AVX10_2_512_AMX_2",
    "ALL",
)
# Newer oneDNN names for the same levels.
_ISA_ALIASES = {"AVX10_1_512": "AVX512_CORE_FP16", "AVX10_1_512_AMX": "AVX512_CORE_AMX",
                "AVX10_1_512_AMX_FP16": "AVX512_CORE_AMX_FP16", "DEFAULT": "ALL"}  # fmt: skip
ISA_ENV = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
# The levels the benchmark can emulate, one per kind of processor users have.
BENCH_ISAS = ("AVX2", "AVX512_CORE_VNNI", "AVX512_CORE_BF16", "AVX512_CORE_AMX")


@dataclass(frozen=True)
class CpuCapabilities:
    """What this processor's vector and matrix units can do.

    Example:
        >>> CpuCapabilities(amx=False, avx512_bf16=True, avx512_vnni=True, avx512=True, avx2=True).isa
        'AVX512_CORE_BF16'
    """

    amx: bool
    avx512_bf16: bool
    avx512_vnni: bool
    avx512: bool
    avx2: bool
    vendor: str = ""  # /proc/cpuinfo's vendor_id, e.g. "AuthenticAMD"; "" when unknown

    @property
    def amd(self) -> bool:
        """Whether the processor is AMD's (its AVX512-BF16 runs bf16 faster than fp32: measured)."""
        return self.vendor == "AuthenticAMD"

    @property
    def isa(self) -> str:
        """The newest oneDNN instruction-set level the hardware has."""
        for level, present in (
            ("AVX512_CORE_AMX", self.amx),
            ("AVX512_CORE_BF16", self.avx512_bf16),
            ("AVX512_CORE_VNNI", self.avx512_vnni),
            ("AVX512_CORE", self.avx512),
            ("AVX2", self.avx2),
        ):
            if present:
                return level
        return "SSE41"

    def describe(self) -> str:
        """The flags, as one line for logs and benchmark headers.

        Example:
            >>> CpuCapabilities(True, True, True, True, True).describe()
            'amx avx512_bf16 avx512_vnni avx512 avx2'
        """
        names = ("amx", "avx512_bf16", "avx512_vnni", "avx512", "avx2")
        return " ".join(name for name in names if getattr(self, name)) or "none of amx/avx512/avx2"


@dataclass(frozen=True)
class Choice:
    """A precision picked for a model, and why, in words a log line can carry.

    Example:
        >>> Choice(torch.bfloat16, "AMX").label
        'bfloat16'
    """

    dtype: torch.dtype
    reason: str

    @property
    def label(self) -> str:
        return str(self.dtype).removeprefix("torch.")


@functools.cache
def cpu_capabilities() -> CpuCapabilities:
    """This machine's capabilities, from torch's own checks, else from ``/proc/cpuinfo``.

    Example:
        >>> isinstance(cpu_capabilities().avx2, bool)
        True
    """
    try:
        found = torch.cpu.get_capabilities()  # what torch's kernels dispatch on (torch >= 2.10)
    except (AttributeError, RuntimeError):
        return capabilities_from_flags(_cpuinfo_flags(), _cpuinfo_field("vendor_id"))
    return CpuCapabilities(
        amx=bool(found.get("amx_tile") and found.get("amx_bf16")),
        avx512_bf16=bool(found.get("avx512_bf16")),
        avx512_vnni=bool(found.get("avx512_vnni")),
        avx512=bool(found.get("avx512_f")),
        avx2=bool(found.get("avx2")),
        vendor=_cpuinfo_field("vendor_id"),
    )


def capabilities_from_flags(flags: set[str], vendor: str = "") -> CpuCapabilities:
    """Capabilities from the ``flags`` line of ``/proc/cpuinfo``.

    Example:
        >>> capabilities_from_flags({"avx2", "avx512f", "avx512_vnni"}).isa
        'AVX512_CORE_VNNI'
    """
    return CpuCapabilities(
        amx={"amx_tile", "amx_bf16"} <= flags,
        avx512_bf16="avx512_bf16" in flags,
        avx512_vnni="avx512_vnni" in flags,
        avx512="avx512f" in flags,
        avx2="avx2" in flags,
        vendor=vendor,
    )


def _cpuinfo_flags() -> set[str]:
    return set(_cpuinfo_field("flags").split())


@functools.cache
def _cpuinfo_field(name: str) -> str:
    """The first ``name`` line of ``/proc/cpuinfo`` (``""`` where there is none, e.g. not Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    except OSError:
        pass
    return ""


def isa_limit() -> str | None:
    """The level ``ONEDNN_MAX_CPU_ISA`` caps oneDNN at, or ``None`` when unset or unknown.

    Example:
        >>> os.environ["ONEDNN_MAX_CPU_ISA"] = "avx10_1_512_amx"
        >>> isa_limit()
        'AVX512_CORE_AMX'
        >>> del os.environ["ONEDNN_MAX_CPU_ISA"]
    """
    for name in ISA_ENV:
        value = os.environ.get(name, "").strip().upper()
        if value:
            value = _ISA_ALIASES.get(value, value)
            return value if value in ISA_LEVELS else None
    return None


def effective_isa(caps: CpuCapabilities, limit: str | None) -> str:
    """The level oneDNN runs at: the hardware's, lowered to ``limit`` when one is set.

    Example:
        >>> effective_isa(CpuCapabilities(True, True, True, True, True), "AVX2")
        'AVX2'
    """
    if limit is None or ISA_LEVELS.index(limit) >= ISA_LEVELS.index(caps.isa):
        return caps.isa
    return limit


def auto_cpu_choice(kind: str, caps: CpuCapabilities | None = None, isa_limit: str | None = None) -> Choice:
    """The precision ``dtype="auto"`` gives a ``kind`` model on the CPU, with the reason.

    Both models (the encoder and mT5) spend their time in the same matrix multiplies, so one rule
    serves both: bfloat16 with AMX or on AMD's AVX512-BF16, float32 elsewhere (see the module's
    measurements).

    Example:
        >>> amx = CpuCapabilities(True, True, True, True, True)
        >>> auto_cpu_choice("summarizer", amx).reason
        'AMX (oneDNN AVX512_CORE_AMX) runs bfloat16 matrix multiplies 2-4x faster than float32'
        >>> auto_cpu_choice("classifier", amx, isa_limit="AVX512_CORE_BF16").dtype  # an Intel Xeon, capped
        torch.float32
        >>> zen4 = CpuCapabilities(False, True, True, True, True, vendor="AuthenticAMD")
        >>> auto_cpu_choice("classifier", zen4).dtype
        torch.bfloat16
    """
    caps = caps or cpu_capabilities()
    isa = effective_isa(caps, isa_limit)
    capped = f", capped by ONEDNN_MAX_CPU_ISA={isa_limit}" if isa != caps.isa else ""
    if ISA_LEVELS.index(isa) >= ISA_LEVELS.index("AVX512_CORE_AMX"):
        return Choice(torch.bfloat16, f"AMX (oneDNN {isa}) runs bfloat16 matrix multiplies 2-4x faster than float32")
    has_bf16 = ISA_LEVELS.index(isa) >= ISA_LEVELS.index("AVX512_CORE_BF16")
    if has_bf16 and caps.amd:
        reason = f"AMD AVX512-BF16 (oneDNN {isa}{capped}) runs bfloat16 matrix multiplies ~1.6-1.9x faster than float32"
        return Choice(torch.bfloat16, reason)
    if has_bf16:
        reason = f"AVX512-BF16 without AMX (oneDNN {isa}{capped}) measured slower in bfloat16 on Intel"
        return Choice(torch.float32, reason)
    return Choice(torch.float32, f"no bfloat16 dot products (oneDNN {isa}{capped}): bfloat16 would be slower here")


def auto_cpu_dtype(kind: str) -> torch.dtype:
    """:func:`auto_cpu_choice` for this machine, said in one INFO log line per model loaded.

    Example:
        >>> auto_cpu_dtype("classifier") in (torch.bfloat16, torch.float32)
        True
    """
    choice = auto_cpu_choice(kind, cpu_capabilities(), isa_limit())
    logger.info(
        "%s on the CPU in %s (dtype=auto): %s; dtype=... or --dtype overrides", kind, choice.label, choice.reason
    )
    return choice.dtype


def precision_label(backend: str, dtype: torch.dtype | None, quantize: str | None, auto: bool) -> str:
    """How a loaded model runs, for summary lines and benchmark records.

    Example:
        >>> precision_label("torch", torch.bfloat16, None, auto=True)
        'torch bfloat16 (auto)'
        >>> precision_label("ctranslate2", None, "int8", auto=False)
        'ctranslate2 int8'
    """
    kind = "int8" if quantize == "int8" else str(dtype or torch.float32).removeprefix("torch.")
    return f"{backend} {kind}{' (auto)' if auto else ''}"


def model_dtype(
    kind: str, dtype: str | torch.dtype | None, device: torch.device, model_type: str, quantize: str | None
) -> tuple[torch.dtype, bool]:
    """The torch backend's weight precision for a ``kind`` model, and whether ``"auto"`` chose it.

    An explicit ``dtype`` (or ``quantize``) always wins; ``"auto"``/``None`` on the CPU follows
    :func:`auto_cpu_dtype`, elsewhere :func:`inference.devices.resolve_dtype` (half on a GPU).

    Example:
        >>> model_dtype("classifier", "float32", torch.device("cpu"), "bert", None)
        (torch.float32, False)
    """
    auto = dtype in (None, "auto") and quantize is None
    if auto and device.type == "cpu":
        return auto_cpu_dtype(kind), True
    return resolve_dtype(None if dtype == "auto" else dtype, device, model_type, quantize), auto


# kind -> (its fast engine, the module that engine needs, the model types its conversion is tested on)
_FAST_ENGINES = {
    "classifier": ("onnx", "onnxruntime", ("bert",)),
    "summarizer": ("ctranslate2", "ctranslate2", ("mt5", "t5")),
}


@dataclass(frozen=True)
class EngineChoice:
    """The engine ``backend="auto"`` picked, and why (said in one log line at load time)."""

    backend: str
    reason: str


def auto_backend(
    kind: str,
    device: torch.device,
    local: bool,
    dtype: str | torch.dtype | None,
    model_type: str = "",
    isa: str | None = None,
    unfollowed: Iterable[str] = (),
) -> EngineChoice:
    """The engine ``backend="auto"`` (the default) runs a ``kind`` model on: the fastest installed here.

    Measured on a 2-core Xeon with AMX (bench/README.md, "Precision by processor"): topics, docs/s
    at 512 tokens / real lengths: torch bf16 10.6 / 11.3, ONNX Runtime int8 6.4 / 9.8, torch fp32
    ~2 / ~4.5; so with AMX torch (bf16) classifies, and without it ONNX Runtime int8 does (4x fp32
    there). On an AMD Zen 4 (AVX512-BF16, no AMX) ONNX Runtime int8 still wins: 4.64 / 7.01 against
    torch bf16 2.90 / 4.10. Summaries: CTranslate2 int8 2.45 docs/s against torch bf16 1.12 (beam 4,
    512 tokens; Zen 4: 2.40 against 0.94), so CTranslate2 wherever it is installed. A fast engine needs the CPU, a local
    directory, a model type its conversion is tested on, no explicit ``dtype`` (a dtype is
    torch's), and a saved decoding it can follow (``unfollowed``: the saved settings it cannot, e.g.
    ``repetition_penalty``); otherwise torch. ``isa`` stands for this processor's oneDNN level.

    Example:
        >>> auto_backend("summarizer", torch.device("cuda"), local=True, dtype=None).backend
        'torch'
        >>> auto_backend("classifier", torch.device("cpu"), True, None, "bert", isa="AVX512_CORE_AMX").reason
        'bfloat16 on AMX classifies faster than ONNX Runtime int8'
    """
    engine, module, model_types = _FAST_ENGINES[kind]
    if device.type != "cpu":
        return EngineChoice("torch", f"{device.type} runs torch")
    if not local or dtype not in (None, "auto"):
        return EngineChoice("torch", "a hub id or an explicit dtype runs torch")
    if model_type and model_type not in model_types:
        return EngineChoice("torch", f"{engine} conversion is not tested on {model_type!r} models")
    if unfollowed := sorted(unfollowed):
        return EngineChoice("torch", f"the model's saved decoding uses {', '.join(unfollowed)}, which {engine} ignores")
    level = isa or effective_isa(cpu_capabilities(), isa_limit())
    if kind == "classifier" and ISA_LEVELS.index(level) >= ISA_LEVELS.index("AVX512_CORE_AMX"):
        return EngineChoice("torch", "bfloat16 on AMX classifies faster than ONNX Runtime int8")
    if importlib.util.find_spec(module) is None:
        return EngineChoice("torch", f"{module} is not installed (pip install 'khabar[fast]')")
    return EngineChoice(engine, f"{engine} int8 is the fastest {kind} engine installed on this CPU ({level})")


def auto_engine(
    kind: str,
    device: torch.device,
    local: bool,
    dtype: str | torch.dtype | None,
    model_type: str,
    unfollowed: Iterable[str] = (),
) -> str:
    """:func:`auto_backend` for this machine, said in one INFO log line per model loaded.

    Example:
        >>> auto_engine("classifier", torch.device("cpu"), local=False, dtype=None, model_type="bert")
        'torch'
    """
    choice = auto_backend(kind, device, local, dtype, model_type, unfollowed=unfollowed)
    logger.info("%s runs on %s (backend=auto): %s; --backend overrides", kind, choice.backend, choice.reason)
    return choice.backend
