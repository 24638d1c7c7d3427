-- A full listing. ARGV: grace (0, or GRACE for the live dashboard).
-- Answers {now, members, infos, soonest end}.
prune(PRUNE_BATCH)
local cutoff = now_str
if tonumber(ARGV[1]) > 0 then cutoff = string.format('%.6f', now - tonumber(ARGV[1])) end
local members, infos, soonest = listing(cutoff)
return {now_str, members, infos, soonest}
