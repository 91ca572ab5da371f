"""``fleetsched calibrate``: measure a real engine from the client and fit its step-time profile.

:mod:`~fleetsched.calibrate.client` times streamed completions (aiohttp),
:mod:`~fleetsched.calibrate.plan` is the microbenchmark plan and its runner,
:mod:`~fleetsched.calibrate.fit` replays the measurements through the engine model and fits
the profile.
"""
