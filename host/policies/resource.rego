# Veil's default resource policy: the attestation token's claims and the requested
# resource -> allow / deny, with the reasons. Denies by default.
package policy

import rego.v1

default allow := false

allow if {
	input.submods.cpu0
	count(deny) == 0
}

cpu := object.get(input.submods, "cpu0", {})

veil := object.get(cpu, "veil", {})

deny contains "no cpu0 attestation result" if not input.submods.cpu0

deny contains sprintf("attestation status is %v, not affirming", [cpu["ear.status"]]) if {
	cpu["ear.status"] != "affirming"
}

deny contains "simulated evidence is not allowed" if {
	veil.simulated
	not object.get(data, ["reference", "allow_simulated"], false)
}

deny contains "debug guest" if veil.debug

deny contains "model revoked" if {
	input.resource.type == "model-key"
	input.resource.tag in input.revoked
}
