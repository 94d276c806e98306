"""The tuning constants of the cleanup and of the hero_proc client, in one place.

Each says what it trades and the figure that justifies it: `make bench` (100,000
codescaler jobs; modes cheap, slow = 1 ms per call, nobatch) or `make soak-flood`
(an admin's `system.health` while one peer floods the service). "CPU" is the
service's own CPU time per deleted job, the figure least disturbed by a shared
machine. Limits that callers see (sizes, timeouts) are settings, not tuning:
see `settings.py`.
"""

# -- the cleanup's walk -------------------------------------------------------------

# Passes through the listing when jobs keep disappearing under the run (each pass
# after the first finds what a moved window skipped). A bound, not a speed knob:
# a quiet hero_proc needs one pass; the tests that delete jobs between pages need two.
MAX_PASSES = 3

# -- jobs.list and stats ------------------------------------------------------------

# Jobs per hero_proc page `jobs.list` asks for (at least; `limit` if more). Small
# pages keep each turn of the event loop short under a flood: an admin's health
# p99 120 ms with 1,000, 76 ms with 250 (make soak-flood).
LIST_PAGE = 250
LIST_PAGES = 40  # hero_proc pages one `jobs.list` call reads at most (then a cursor)

# Items per hero_proc page a `stats` walk asks for: each page is counted in one turn
# of the event loop, so smaller pages keep other callers' latency low while a walk
# runs (make soak-flood, stats only: health p99 188 ms with 10,000, 66 ms with
# 1,000); walks are shared and reused, so the extra round trips cost little.
STATS_PAGE = 1_000
STATS_PAGES = 10_000  # pages of one listing a walk reads at most (10 million items)

# -- the hero_proc client -------------------------------------------------------------

# Connections to hero_proc at once (the client's pool), hence requests in flight.
# The slow mode needs many: each call takes 1 ms and a batch's calls run one after
# another, so throughput is about connections / 1 ms x batch overlap.
HERO_PROC_CONNECTIONS = 128
# Single calls at once when hero_proc takes no batches (nobatch mode).
SINGLES_IN_FLIGHT = 32

# `Pacing`: batches of BATCH_CHEAP, INFLIGHT_CHEAP at once, while a call in a batch
# costs hero_proc at most SLOW_CALL seconds (the requests' own overhead dominates:
# few large batches spread it thin); else BATCH_SLOW, INFLIGHT_SLOW at once (hero_proc
# works through a batch's calls one after another: many small batches overlap).
SLOW_CALL = 250e-6
BATCH_CHEAP = 2_000
INFLIGHT_CHEAP = 2
BATCH_SLOW = 128
INFLIGHT_SLOW = HERO_PROC_CONNECTIONS
# Calls in a batch while what `Pacing` knows is older than STALE_AFTER seconds: a
# hero_proc that became slow then costs one small batch to find out, not large ones.
PROBE = 200
STALE_AFTER = 2.0
# Weight of what `Pacing` knew against the latest batch's time per call.
PACING_MEMORY = 0.7
