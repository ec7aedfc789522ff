"""memwarden: keep long-running web workers from dying of memory leaks."""
