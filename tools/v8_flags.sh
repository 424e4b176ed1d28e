# V8 flags for the krelay daemon, sourced by tools/run_flags.sh (the ./krelay launcher,
# tools/dist.sh) and tools/compile.sh.
#
# V8 optimises a function only after thousands of calls (TurboFan after 3,000 invocations, and
# again 500 after each inline-cache change), and the relay's per-connection code is many small
# functions, each called once or twice per connection. Started cold, a relay thread spent 37 us
# of user time per HTTP connection in its first 3 s under load (mean of six starts), 25 us in the
# next 3 s and 12-16 us from the tenth second on; with these thresholds, 30.5 and 17 us, and the
# same steady state (alternating cold starts; docs/performance.md, docs/design/warm_up.md).
KRELAY_V8_FLAGS="--invocation-count-for-turbofan=300,--invocation-count-for-maglev=50"
KRELAY_V8_FLAGS+=",--minimum-invocations-after-ic-update=50,--invocation-count-for-feedback-allocation=1"
