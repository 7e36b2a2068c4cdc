"""Pure domain core, no I/O: spec/ (the file format, registry values, digest), desired/
(discovery and loading), governance/ (policy, packages, findings, evidence), build/
(image build rules), plan/ (planning, saved plans), drift/ (the drift report)."""
