# Veil's default attestation policy: verified evidence claims -> AR4SI trustworthiness
# vector (EAR). Values: 2 affirming, 32..95 warning, 96..127 contraindicated; a claim
# left undefined is 0 (none). Reference values are `data.reference` (set through the
# admin API): measurements (hex SNP MEASUREMENT / TDX MRTD, or a bare TPM's quoted
# pcrDigest), allow_any_measurement, init_data (hex HOST_DATA / MRCONFIGID / PCR 8),
# min_snp_tcb {bootloader, tee, snp, microcode}, tpm_aks (hex SHA-256 of the DER
# SubjectPublicKeyInfo of AKs trusted on their own), tpm_pcrs {"index": "hex"} (values
# every quoted TPM must show: runtime measurements, e.g. Veil's PCR 23).
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

tpm_aks := object.get(ref, "tpm_aks", [])

tpm_pcrs := object.get(ref, "tpm_pcrs", {})

# A bare TPM proves nothing unless its AK is one the operator trusts: nothing in the
# evidence binds it to hardware (Azure's and Veil's compositions bind it by a CPU report).
tpm_ak_untrusted if {
	input.tee == "tpm"
	not input.tpm.ak_sha256 in tpm_aks
}

tdx_not_up_to_date if {
	input.tee == "tdx"
	input.tcb != "UpToDate"
}

# The platform: genuine (verification passed), at or above the minimum TCB.
default hardware := 97

hardware := 97 if tpm_ak_untrusted else := 96 if tcb_below_minimum else := 32 if tdx_not_up_to_date else := 2

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

# Runtime measurements in TPM PCRs, when reference values name some: every named PCR
# must be quoted with that value. No TPM evidence while PCRs are required is a failure.
tpm_pcr_mismatch if {
	count(tpm_pcrs) > 0
	some idx, want in tpm_pcrs
	object.get(object.get(object.get(input, "tpm", {}), "pcrs", {}), idx, "") != want
}

file_system := 96 if tpm_pcr_mismatch

file_system := 2 if {
	count(tpm_pcrs) > 0
	not tpm_pcr_mismatch
}
