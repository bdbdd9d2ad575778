//! Azure confidential VMs: HCL report + vTPM quote, bound to the SNP report or TD quote.
