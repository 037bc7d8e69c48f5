"""ensemble.report: report.html of a fitted ensemble.

    page              the self-contained page (ReportData, ReportSection, write_report)
    figures           its matplotlib figures
    sections          which sections follow the page's own, in which order, and report_data
    audit_section     the data audit; explain_section: where the models look (through ensemble.explaining)
"""
