"""Issue 10 (session b) studies: exactly what ran. python launch10b.py WHICH"""
import sys
from mindcore.mind.demo import DEMO
from mindcore.mind.study import run_study
which = sys.argv[1]
base = dict(DEMO, steps=1000, n_id=1000, n_ood=1000, eval_max_n=None)
R = "/work/issue10_runs/b"
if which == "main":
    run_study(f"{R}/main", base, modes=["single", "uniform", "consistency", "mind"], seeds=3, threads=1)
elif which == "solo":   # solo students (1 seed) + the answer_span ablation's mind
    run_study(f"{R}/solo-answer_span", dict(base, ta_target="answer_span"), modes=["mind"],
              protocols=["equal_questions"], seeds=1, solo=True, threads=1)
elif which in ("loss_improvement", "perspective_normalised"):
    run_study(f"{R}/{which}", dict(base, ta_target=which), modes=["mind"], protocols=["equal_questions"],
              seeds=1, threads=1)
