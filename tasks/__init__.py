"""The lm-eval task configs (YAML), their hooks (utils.py) and the vendored data (data/).

Installed as the package `ppa_eval.task_configs`, so the wheel carries them; `ppa_eval.tasks`
is the registry that names each task and reads these files.
"""
