# Veil's default attestation policy: verified evidence claims -> AR4SI trustworthiness
# vector (EAR). Values: 2 affirming, 32..95 warning, 96..127 contraindicated; a claim
# left undefined is 0 (none). Reference values are `data.reference` (set through the
# admin API): measurements (hex SNP MEASUREMENT / TDX MRTD), allow_any_measurement,
# init_data (hex HOST_DATA / MRCONFIGID), min_snp_tcb {bootloader, tee, snp, microcode}.
package policy

import rego.v1

ref := object.get(data, "reference", {})

measurements := object.get(ref, "measurements", [])

init_data := object.get(ref, "init_data", [])

min_tcb := object.get(ref, "min_snp_tcb", {})

tcb_below_minimum if {
	input.tee == "snp"
	some k, v in min_tcb
	input.snp_tcb[k] < v
}

tdx_not_up_to_date if {
	input.tee == "tdx"
	input.tcb != "UpToDate"
}

# The platform: genuine (verification passed), at or above the minimum TCB.
default hardware := 97

hardware := 96 if tcb_below_minimum else := 32 if tdx_not_up_to_date else := 2

# Debug guests expose their memory to the host.
default configuration := 97

configuration := 2 if not input.debug

# The launch measurement must be an allowed one; with none configured, only an explicit
# allow_any_measurement (dev mode) affirms it.
default executables := 33

executables := 2 if {
	count(measurements) > 0
	input.measurement in measurements
}

executables := 96 if {
	count(measurements) > 0
	not input.measurement in measurements
}

executables := 2 if {
	count(measurements) == 0
	object.get(ref, "allow_any_measurement", false) == true
}

# Launch-time init data (HOST_DATA / MRCONFIGID), when reference values name it.
instance_identity := 2 if {
	count(init_data) > 0
	input.init_data in init_data
}

instance_identity := 96 if {
	count(init_data) > 0
	not input.init_data in init_data
}
