-- PowerDNS Recursor 4.8 (lua-config-file): follows wormsink's policy zone by
-- AXFR/IXFR with TSIG, polling every `refresh` seconds (it does not act on
-- NOTIFY for RPZ). Its dnstap logs only outgoing queries, so it gives no
-- dns_lookup evidence.
rpzPrimary("10.0.0.5:5353", "rpz.wormsink.", {
	tsigname = "xfr-key", tsigalgo = "hmac-sha256", tsigsecret = "REPLACE-WITH-tsig-keygen-SECRET",
	refresh = 60,
})
