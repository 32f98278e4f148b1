"""The ADDP-effects studies: four training variants × several seeds at equal steps, each scored on test at the
sampler settings it picks on val. ``config`` (the study's settings), ``task`` (what a task provides), ``ris`` and
``depth`` (the two tasks), ``registry`` (tasks by name), ``stats`` (spread and paired differences), ``study`` (runs,
reuse, assembly), ``summary`` (effects.json), ``report`` (pages and plots)."""
