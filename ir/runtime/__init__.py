"""The runtime bridge: run a :class:`~ncnnpass.ir.Graph` in the real ncnn runtime, here or on a target.

- :mod:`.bridge`: ``run``, ``load``, ``infer_shapes`` (in-process ncnn, or a target by name);
- :mod:`.targets`: where ncnn runs (``x86``, ``isolated``, ``arm``/``arm-a57`` emulated), sessions and pools;
- :mod:`.worker`: the worker process a target runs (needs only ncnn and numpy);
- :mod:`.options`: the one table of ncnn option presets;
- :mod:`.shapes`: the input shapes of a graph (declared, given, parsed from text);
- :mod:`.arm_env`, :mod:`.external`: provisioning of the emulated phone, external tools and caches.

It sits above the IR and below everything that runs models (the measurement core, the pass engine, the tools).

>>> from ncnnpass.ir import runtime
>>> out = runtime.run(graph, x, options="fp32")            # in this process
>>> out = runtime.run(graph, x, target="arm")              # the emulated phone, in a warm worker
"""

from .bridge import LoadedNet, check_input_shapes, infer_shapes, load, run
from .options import OPTION_PRESETS, PRESET_DESCRIPTIONS, make_options, option_fields
from .targets import (
    TARGETS,
    Job,
    JobResult,
    Target,
    TargetPool,
    default_target,
    describe_target,
    get_default_target,
    normalize_target,
    open_target,
    set_default_target,
    shared_target,
    using_target,
)

__all__ = ["OPTION_PRESETS", "PRESET_DESCRIPTIONS", "TARGETS", "LoadedNet", "Job", "JobResult", "Target", "TargetPool",
           "check_input_shapes", "default_target", "describe_target", "get_default_target", "infer_shapes", "load",
           "make_options", "normalize_target", "open_target", "option_fields", "run", "set_default_target",
           "shared_target", "using_target"]
