package tui

// The long texts of the EULA and KSN steps. They are catalog keys like
// any other message: the Czech and Russian texts are in firstboot/i18n's
// locales, using the terms of the vendor's own help in those languages.

// EULASummary sums up the EULA's data-provision terms (data contract:
// "Consent and data provision"); the full text ships in the image.
const EULASummary = `END USER LICENSE AGREEMENT (summary)

By accepting, you agree to the license terms of the ksmg mail gateway and to the automatic provision of the data listed in its "Conditions regarding data processing" section: application type, version and localization; versions of installed updates; activation code and the unique activation ID of the current license activation code; computer ID and application installation ID; operating system type, version and bitness; virtual environment name; IDs of the application components active when the data is sent.`

// EULAPath is where the image ships the EULA's full text.
const EULAPath = "/usr/share/doc/ksmg-appliance/EULA.txt"

// KSNSummary explains the voluntary cloud reputation service.
const KSNSummary = `Kaspersky Security Network (KSN) is a cloud reputation service. Joining is voluntary and OFF unless you turn it on here; you can change it later in the web interface. If on, the gateway sends: checksums and scan results of checked objects, sender IP addresses and header data of scanned mail, attachment checksums, sizes and types, and license information. The private variant (KPSN) sends nothing. On a Secondary node the Control node's setting applies.`
