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
# Figures: service CPU µs per deleted job and jobs/s, medians of 3 alternated runs,
# 100,000 jobs (cheap) or 20,000 (slow, nobatch).

# Connections to hero_proc at once (the client's pool), hence requests in flight.
HERO_PROC_CONNECTIONS = 128
# Single calls at once when hero_proc takes no batches (nobatch: 16 -> 1,252 jobs/s,
# 32 -> 1,271, 64 -> 986; the CPU per job the same, 362 µs).
SINGLES_IN_FLIGHT = 32

# `Pacing` chooses by hero_proc's time per call in a batch. At most SLOW_CALL seconds:
# the requests' own overhead dominates, so few large batches spread it thin. Above
# it, hero_proc takes its time per call (a batch's calls run one after another),
# so many batches overlap. At 50 µs a busy 2-core machine's simulator read as slow
# (cheap: 28.9 µs, 10.5k jobs/s); at 250 µs it reads as cheap (15.4 µs, 18.2k jobs/s).
# The slow mode takes 1,000 µs a call.
SLOW_CALL = 250e-6
# Cheap: 1,000 a batch 13.5 µs, 38.9k jobs/s; 2,000 12.9 µs, 40.9k; 5,000 13.0 µs, 41.0k.
BATCH_CHEAP = 2_000
INFLIGHT_CHEAP = 2  # 4 in flight: 13.0 µs, 40.8k jobs/s, no better
# Slow: 32 a batch 26.5 µs, 9.2k jobs/s; 64 20.0 µs, 8.6k; 128 16.0 µs, 9.3-10.8k;
# 256 15.0 µs, 9.9k.
BATCH_SLOW = 128
INFLIGHT_SLOW = HERO_PROC_CONNECTIONS  # 64 in flight: 8.8k jobs/s against 10.8k
# Calls in a batch while what `Pacing` knows is older than STALE_AFTER seconds: a
# hero_proc that became slow then costs one small batch to find out, not large ones
# (a safety bound: within a cleanup what `Pacing` knows is always fresh).
PROBE = 200
STALE_AFTER = 2.0
# Weight of what `Pacing` knew against the latest batch's time per call, so that one
# slow batch does not switch modes (cheap: 12.9 µs with 0.7, 13.5 µs with 0).
PACING_MEMORY = 0.7

# -- the state database ---------------------------------------------------------------

# How long the cleanup lease lasts unless renewed (each page's checkpoint renews it, and
# a timer every third of it). A holder on this host that has ended is taken over at
# once; only a holder elsewhere (another container, another pid namespace) that stopped
# without releasing keeps others waiting, for at most this long.
LEASE_TTL_S = 60
# How often the service drops history older than HERO_CODESCALERS_HISTORY_DAYS and marks
# the runs of ended processes interrupted (also done at start): retention is counted in
# days, so an hour's lag is nothing, and each pass is one indexed DELETE.
HOUSEKEEPING_INTERVAL_S = 3600

# How long a dry run's plan can be applied (`jobs.cleanup {plan_id}`): long enough to
# read a preview, ask and get a yes; short enough that the jobs it lists are still the
# ones the preview showed. Each plan is checked against its filters when applied anyway.
PLAN_LIFETIME_S = 3600
