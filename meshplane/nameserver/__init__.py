"""The mesh DNS server: virtual service names -> stable VIPs, Cloud Map DNS namespaces -> their
instances, everything else forwarded (``meshplane.service.dns_answers`` decides what to answer,
:mod:`.server` serves it)."""
