"""Where a step's time goes: a profiler trace, its XLA ops classified by the compiled HLO.

Used by `amfi_jax.tools.benchmark --profile_dir=DIR`.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import re
import time
from collections import defaultdict

import jax

CATEGORIES = ("convolution", "dot", "reduce", "fusion", "copy", "other")
# Opcodes that only move or lay out data.
_MOVEMENT = frozenset((
    "copy", "transpose", "bitcast", "broadcast", "reshape", "slice", "dynamic-slice",
    "dynamic-update-slice", "concatenate", "pad", "gather", "reverse", "iota", "parameter",
    "constant", "tuple", "get-tuple-element", "copy-start", "copy-done"))
_REDUCE = frozenset(("reduce", "reduce-window", "select-and-scatter"))
_INDEXED = frozenset(("gather", "scatter"))
_CONTAINERS = frozenset(("while", "call", "conditional"))  # run other computations' ops
_INSTRUCTION = re.compile(r"^\s+(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$")
_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")
_FUSION_CALLS = re.compile(r"\bcalls=%?([\w.\-]+)")
_LOOP_BODY = re.compile(r"\bbody=%?([\w.\-]+)")
_CUSTOM_TARGET = re.compile(r'custom_call_target="([^"]+)"')


def _opcode(rest: str) -> str:
  """The opcode of an instruction's right-hand side `SHAPE opcode(...)`; tuple shapes are
  parenthesised and TPU layouts hold parentheses, so skip the shape by bracket depth."""
  depth, i = 0, 0
  while i < len(rest):
    ch = rest[i]
    if ch in "({[":
      depth += 1
    elif ch in ")}]":
      depth -= 1
    elif ch == " " and depth == 0:
      break
    i += 1
  match = re.match(r"\s*([\w\-]+)\(", rest[i:])
  return match.group(1) if match else ""


def parse_hlo(hlo: str) -> tuple[dict[str, tuple[str, str]], dict[str, list[str]]]:
  """({instruction: (opcode, rest of line)}, {computation: [its instructions]})."""
  instructions, computations, current = {}, defaultdict(list), None
  for line in hlo.splitlines():
    if not line.startswith(" "):
      header = _COMPUTATION.match(line)
      current = header.group(1) if header else None
      continue
    match = _INSTRUCTION.match(line)
    if match and current is not None:
      name, rest = match.groups()
      instructions[name] = (_opcode(rest), rest)
      computations[current].append(name)
  return instructions, dict(computations)


def _opcodes(name: str, instructions, computations) -> set[str]:
  """The instruction's opcode, plus those inside it if it is a fusion (recursively)."""
  opcode, rest = instructions.get(name, ("", ""))
  found = {opcode}
  if opcode == "custom-call":
    target = _CUSTOM_TARGET.search(rest)
    target = target.group(1).lower() if target else ""
    if "conv" in target:
      found.add("convolution")
    elif any(t in target for t in ("gemm", "matmul", "cublas")):
      found.add("dot")
  if opcode == "fusion":
    for called in _FUSION_CALLS.findall(rest):
      for inner in computations.get(called, ()):
        found |= _opcodes(inner, instructions, computations)
  return found


def categorize(name: str, instructions, computations) -> str:
  """convolution / dot (anything containing one) ▸ reduce (e.g. BatchNorm statistics) ▸ copy
  (data movement only, or a gather / scatter with its index arithmetic) ▸ fusion (other fused
  elementwise work) ▸ other (loops, calls, sorts, collectives…)."""
  ops = _opcodes(name, instructions, computations)
  if "convolution" in ops:
    return "convolution"
  if "dot" in ops:
    return "dot"
  if ops & _REDUCE:
    return "reduce"
  if ops - {"fusion"} <= _MOVEMENT or ops & _INDEXED:
    return "copy"
  return "fusion" if "fusion" in ops else "other"


def loops_with_arithmetic(hlo: str) -> bool:
  """Whether a while loop's body holds convolutions or matrix products (other loops, such as
  the random-key split's, hold next to no FLOPs)."""
  instructions, computations = parse_hlo(hlo)
  for opcode, rest in instructions.values():
    body = _LOOP_BODY.search(rest) if opcode == "while" else None
    if body and any(categorize(op, instructions, computations) in ("convolution", "dot")
                    for op in computations.get(body.group(1), ())):
      return True
  return False


def profile(run_steps, hlo: str, directory: str, steps: int) -> dict:
  """Traces `run_steps()` (`steps` train steps) and summarises the trace's XLA ops by category;
  the step's `hlo` is saved next to the trace, so the trace can be read again against it."""
  directory = os.path.abspath(directory)
  existing = set(glob.glob(os.path.join(directory, "plugins", "profile", "*")))
  start = time.perf_counter()
  with jax.profiler.trace(directory, create_perfetto_trace=True):
    run_steps()
  wall = time.perf_counter() - start
  runs = sorted(set(glob.glob(os.path.join(directory, "plugins", "profile", "*"))) - existing)
  traces = glob.glob(os.path.join(runs[-1], "*perfetto_trace.json.gz")) if runs else []
  if not traces:
    return {"trace": None, "error": f"no perfetto trace written under {directory}"}
  hlo_path = os.path.join(runs[-1], "train_step.hlo.txt")
  with open(hlo_path, "w") as f:
    f.write(hlo)
  with gzip.open(traces[0], "rt") as f:
    events = json.load(f)
  module = re.match(r"HloModule\s+([\w.\-]+)", hlo)
  summary = summarize_trace(events, hlo, module.group(1) if module else None, steps)
  return {"trace": traces[0], "hlo": hlo_path, "steps": steps, "wall_s_per_step": wall / steps,
          **summary}


_END = "end: "  # XLA CPU's thunk executor marks an op's completion with an event `end: <op>`


def _spans(ops: list[dict], events: list[dict]) -> list[tuple[dict, float, float]]:
  """(event, start, end) per op execution. XLA CPU's asynchronous thunks (native convolutions
  on the Eigen pool, for one) return long before their work is done: their event lasts
  microseconds, their `end: <op>` event comes when the work completes. Ops without one end
  with their event."""
  ends = defaultdict(list)
  for e in events:
    if e.get("ph") == "X" and e.get("name", "").startswith(_END):
      ends[e["name"][len(_END):]].append(float(e["ts"]))
  for times in ends.values():
    times.sort()
  used = defaultdict(int)
  out = []
  for e in sorted(ops, key=lambda e: float(e["ts"])):
    name, start = e["args"]["hlo_op"], float(e["ts"])
    end, times, i = start + float(e["dur"]), ends.get(name, ()), used[name]
    while i < len(times) and times[i] < start:
      i += 1
    if i < len(times):
      end, i = max(end, times[i]), i + 1
    used[name] = i
    out.append((e, start, end))
  return out


def _own_times(spans, containers: set[str]) -> list[tuple[dict, float]]:
  """Each op's time; a loop's or call's without the ops nested in it on its thread (its body's
  ops have events of their own), so nothing counts twice. Only containers lose nested time: an
  asynchronous op's span overlaps later ops without containing them."""
  own = {id(e): end - start for e, start, end in spans}
  by_thread = defaultdict(list)
  for span in spans:
    by_thread[(span[0].get("pid"), span[0].get("tid"))].append(span)
  for thread in by_thread.values():
    open_containers: list[tuple[float, dict]] = []
    for e, start, end in sorted(thread, key=lambda s: (s[1], -s[2])):
      while open_containers and open_containers[-1][0] <= start:
        open_containers.pop()
      if open_containers and end <= open_containers[-1][0]:
        own[id(open_containers[-1][1])] -= end - start
      if e["args"]["hlo_op"] in containers:
        open_containers.append((end, e))
  return [(e, own[id(e)]) for e, _, _ in spans]


def summarize_trace(trace: dict | list, hlo: str, module: str | None, steps: int) -> dict:
  """Seconds per step and shares by op category, and the costliest ops, from a perfetto/Chrome
  JSON trace. Only complete events naming an XLA op (`args.hlo_op`) of `module` count. An op's
  time runs from its start to its completion; independent ops run concurrently (XLA CPU's
  thunk executor uses every core), so the sum can exceed the wall time."""
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  ops = [e for e in events if e.get("ph") == "X" and "hlo_op" in e.get("args", {})
         and (module is None or e["args"].get("hlo_module") == module)]
  instructions, computations = parse_hlo(hlo)
  containers = {n for n, (opcode, _) in instructions.items() if opcode in _CONTAINERS}
  by_category, by_op = defaultdict(float), defaultdict(float)
  for event, own_us in _own_times(_spans(ops, events), containers):
    name = event["args"]["hlo_op"]
    by_category[categorize(name, instructions, computations)] += own_us * 1e-6 / steps
    by_op[name] += own_us * 1e-6 / steps
  total = sum(by_category.values())
  top = sorted(by_op.items(), key=lambda kv: -kv[1])[:10]
  return {"op_events": len(ops), "op_s_per_step": total,
          "categories": {c: {"s_per_step": by_category[c],
                             "share": by_category[c] / total if total else 0.0}
                         for c in CATEGORIES},
          "top_ops": [{"op": n, "category": categorize(n, instructions, computations),
                       "s_per_step": s} for n, s in top]}
