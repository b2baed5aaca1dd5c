# Every decode kernel an engine build can compile without split-K (tests/sm90_check.py --every-candidate, the unsplit
# candidates), built for sm_90 from two trees with Triton's JIT and no GPU; prints how many of the first tree's
# kernels the second builds to the same SASS, parameter offsets in the constant bank aside (a kernel that gains a
# parameter moves the others').
#   PYTHONPATH=.triton .venv/bin/python same_sass.py OLD_TREE NEW_TREE     (each tree a checkout with workflow/)
#   (internally: same_sass.py --dump TREE, in a process of its own per tree)
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve()
SM90_CHECK = HERE.parents[4] / "tests" / "sm90_check.py"  # this tree's; the old tree may not have one


def dump(tree: str) -> None:
    sys.path[:0] = [f"{tree}/workflow/scripts", str(SM90_CHECK.parent)]
    trtflow = importlib.import_module("trtflow")  # the tree's, before sm90_check puts this tree's on the path
    import sm90_check as check

    assert Path(trtflow.__file__).is_relative_to(Path(tree).resolve()), trtflow.__file__
    tuning = check.tuning
    if not hasattr(tuning, "candidates_of"):  # before split-K every linear had the same candidates
        tuning.candidates_of = lambda name, batch, width: tuning.candidates(batch, width)
    candidates_of = tuning.candidates_of  # the unsplit ones only: the same candidates, last included, in both trees
    tuning.candidates_of = lambda *args: [c for c in candidates_of(*args) if c.kwargs.get("SPLIT_K", 1) == 1]

    def resources(kernel):
        with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
            cubin.write(kernel.asm["cubin"])
            cubin.flush()
            sass = subprocess.run([str(check.CUOBJDUMP), "-sass", cubin.name], capture_output=True, text=True).stdout
        lines = [line for line in sass.splitlines() if re.search(r"/\*[0-9a-f]{4}\*/", line)]
        lines = [re.sub(r"/\*\s*0x[0-9a-f]+\s*\*/|/\*[0-9a-f]{4}\*/", "", line) for line in lines]
        return {"sass": "\n".join(re.sub(r"c\[0x0\]\[0x[0-9a-f]+\]", "c[param]", line).strip() for line in lines)}

    check.resources = resources
    check.compile_only_for_sm90()
    check.compile_steps([1, 3, 17, 64], False, True)
    check.compile_steps([1, 3, 64], True, True)
    print(json.dumps(list(check.COMPILED.values())))


def built(tree: str) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, str(HERE), "--dump", tree], capture_output=True, text=True, env=env,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


if __name__ == "__main__":
    if sys.argv[1] == "--dump":
        dump(sys.argv[2])
        sys.exit()
    old, new = built(sys.argv[1]), built(sys.argv[2])
    unsplit = {k["sass"] for k in new}
    same = [k for k in old if k["sass"] in unsplit]
    print(f"{len(old)} kernels from {sys.argv[1]}, {len(new)} from {sys.argv[2]}; "
          f"built to the same SASS by {sys.argv[2]}: {len(same)} of {len(old)}")
    for k in old:
        if k["sass"] not in unsplit:
            print("  not found:", {key: v for key, v in k.items() if key != "sass"})
