"""Loading an f5_tts model and its Vocos vocoder for inference, fast: only the model code is
imported, no weight is randomly initialised, and the checkpoint is memory-mapped and assigned.

With `tts.py`, the only module that imports `f5_tts`. It calls f5_tts's public pieces (`DiT`,
`UNetT`, `CFM`, `get_tokenizer`) the way `f5_tts.infer.utils_infer.load_model` /
`load_checkpoint` / `load_vocoder` (f5-tts 1.1.22) do, and gives the same model, tensor for tensor
(tests/test_f5_loading.py holds it to that, and to the same audio). What it leaves out, measured on
a 2-core CPU with the full-size F5TTS_v1_Base (docs/PERFORMANCE.md):

- `f5_tts.model`'s package `__init__`, which imports the Trainer (datasets, wandb, accelerate), and
  `utils_infer` (the transformers ASR pipeline, matplotlib, pydub): about 3 s of imports the
  worker never calls. The package is registered without running its `__init__`; asking it for a
  name its `__init__` defines (`from f5_tts.model import Trainer`) runs the `__init__` then, so
  other code that imports the package still works.
- librosa (scipy.signal, numba): `f5_tts.model.modules` imports librosa's mel filter bank at
  import time for the BigVGAN mel only; it is imported the first time that mel is computed.
- Random initialisation of 337M parameters (about 2.6 s) that the checkpoint overwrites anyway;
  and the checkpoint copy (about 1.3 s): safetensors maps the file and `load_state_dict(assign=True)`
  makes its tensors the parameters, so the pages are read as the first generation touches them.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

# f5_tts.infer.utils_infer's mel and sampler settings (module constants there; equal, tested).
N_MEL_CHANNELS = 100
HOP_LENGTH = 256
WIN_LENGTH = 1024
N_FFT = 1024
TARGET_SAMPLE_RATE = 24_000
ODE_METHOD = "euler"

_PACKAGE = "f5_tts.model"
_lock = threading.Lock()
_init_lock = threading.Lock()


def model_classes() -> types.SimpleNamespace:
    """f5_tts's model classes and the helpers sampling needs, imported without `f5_tts.model`'s
    package `__init__` and without librosa."""
    with _lock:
        if _PACKAGE not in sys.modules:
            sys.modules[_PACKAGE] = _package_without_init()
        with _librosa_mel_deferred():
            dit = importlib.import_module("f5_tts.model.backbones.dit")
            unett = importlib.import_module("f5_tts.model.backbones.unett")
            cfm = importlib.import_module("f5_tts.model.cfm")
        utils = importlib.import_module("f5_tts.model.utils")
    return types.SimpleNamespace(
        DiT=dit.DiT,
        UNetT=unett.UNetT,
        CFM=cfm.CFM,
        get_tokenizer=utils.get_tokenizer,
        convert_char_to_pinyin=utils.convert_char_to_pinyin,
        get_epss_timesteps=utils.get_epss_timesteps,
        lens_to_mask=utils.lens_to_mask,
        list_str_to_idx=utils.list_str_to_idx,
    )


def _package_without_init() -> types.ModuleType:
    """`f5_tts.model` as a package whose submodules import, its `__init__` run only when a name it
    defines is asked for (PEP 562 module `__getattr__`)."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        raise ImportError(f"{_PACKAGE} is not an importable package")
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader
    initialised = False

    def __getattr__(name: str) -> Any:
        nonlocal initialised
        with _init_lock:
            if not initialised and not name.startswith("__"):
                loader.exec_module(package)  # its ImportError, if any, reaches the caller (and the next one)
                initialised = True
        try:
            return package.__dict__[name]
        except KeyError:
            raise AttributeError(f"module {_PACKAGE!r} has no attribute {name!r}") from None

    package.__getattr__ = __getattr__  # type: ignore[method-assign]
    return package


def _librosa_mel(*args: Any, **kwargs: Any) -> Any:
    """librosa's mel filter bank, imported on first use (f5_tts.model.modules binds it at import)."""
    from librosa.filters import mel

    return mel(*args, **kwargs)


@contextlib.contextmanager
def _librosa_mel_deferred() -> Iterator[None]:
    """While f5_tts.model.modules is imported, `librosa.filters` is a stand-in whose `mel` imports the
    real one when called; afterwards `import librosa.filters` gives the real module as usual."""
    if "librosa.filters" in sys.modules or "f5_tts.model.modules" in sys.modules:
        yield
        return
    stand_in = types.ModuleType("librosa.filters", "stand-in while f5_tts.model.modules is imported")
    stand_in.mel = _librosa_mel  # type: ignore[attr-defined]
    sys.modules["librosa.filters"] = stand_in
    try:
        yield
    finally:
        if sys.modules.get("librosa.filters") is stand_in:
            del sys.modules["librosa.filters"]


# torch.nn.init's in-place initialisers, as modules call them from their reset_parameters / __init__.
_INITIALISERS = (
    "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
    "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_",
)  # fmt: skip


@contextlib.contextmanager
def _uninitialised() -> Iterator[None]:
    """Build modules without filling their parameters: every one is then replaced by a checkpoint
    tensor (`load_state_dict(assign=True)`, strict, so a parameter the checkpoint lacks is an error).
    Patches `torch.nn.init` for the whole process while it lasts: start-up builds the TTS model
    before any other thread builds modules."""
    saved = {name: getattr(torch.nn.init, name) for name in _INITIALISERS}
    with _lock:
        for name in _INITIALISERS:
            setattr(torch.nn.init, name, _leave)
        try:
            yield
        finally:
            for name, fn in saved.items():
                setattr(torch.nn.init, name, fn)


def _leave(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    return tensor


def inference_dtype(device: str) -> torch.dtype:
    """utils_infer.load_checkpoint's choice: fp16 on CUDA devices of compute capability 7 and up."""
    cuda = device.startswith("cuda")
    if (
        cuda
        and torch.cuda.get_device_properties(device).major >= 7
        and not torch.cuda.get_device_name(device).endswith("[ZLUDA]")
    ):
        return torch.float16
    return torch.float32


def load_cfm(
    backbone: str, arch: dict[str, Any], checkpoint: Path, vocab: Path, mel_spec_type: str, device: str
) -> torch.nn.Module:
    """The CFM model of `utils_infer.load_model(model_cls, arch, checkpoint, mel_spec_type, vocab_file,
    device=device)` (EMA weights), in eval mode."""
    f5 = model_classes()
    vocab_char_map, vocab_size = f5.get_tokenizer(str(vocab), "custom")
    with _uninitialised():
        model = f5.CFM(
            transformer=getattr(f5, backbone)(**arch, text_num_embeds=vocab_size, mel_dim=N_MEL_CHANNELS),
            mel_spec_kwargs={
                "n_fft": N_FFT,
                "hop_length": HOP_LENGTH,
                "win_length": WIN_LENGTH,
                "n_mel_channels": N_MEL_CHANNELS,
                "target_sample_rate": TARGET_SAMPLE_RATE,
                "mel_spec_type": mel_spec_type,
            },
            odeint_kwargs={"method": ODE_METHOD},
            vocab_char_map=vocab_char_map,
        )
    model.load_state_dict(_ema_state(checkpoint), assign=True)
    dtype = torch.float32 if mel_spec_type == "bigvgan" else inference_dtype(device)
    return model.to(device=device, dtype=dtype).eval()


def _ema_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's EMA weights, keyed as the model names them (load_checkpoint's renaming)."""
    if checkpoint.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(checkpoint), device="cpu")  # memory-mapped
    else:
        state = _torch_load(checkpoint)["ema_model_state_dict"]
    ema = {k.replace("ema_model.", ""): v for k, v in state.items() if k not in ("initted", "step")}
    # As upstream (f5-tts 305e3ea): older checkpoints carry these mel buffers; the model computes them.
    for key in ("mel_spec.mel_stft.mel_scale.fb", "mel_spec.mel_stft.spectrogram.window"):
        ema.pop(key, None)
    return ema


def load_vocos(directory: Path, device: str) -> torch.nn.Module:
    """`utils_infer.load_vocoder("vocos", is_local=True, local_path=directory, device=device)`."""
    from vocos import Vocos
    from vocos.feature_extractors import EncodecFeatures

    with _uninitialised():
        vocoder = Vocos.from_hparams(str(directory / "config.yaml"))
    if isinstance(vocoder.feature_extractor, EncodecFeatures):  # upstream fetches EnCodec's weights from the hub
        raise ValueError("an EnCodec-feature Vocos is not a mel vocoder F5-TTS can use")
    vocoder.load_state_dict(_torch_load(directory / "pytorch_model.bin"), assign=True)
    return vocoder.eval().to(device)


def _torch_load(path: Path) -> Any:
    """A torch checkpoint on the CPU, memory-mapped when it is in torch's zip format (any since torch 1.6)."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # the legacy (pre-zip) format cannot be mapped
        return torch.load(str(path), map_location="cpu", weights_only=True)
