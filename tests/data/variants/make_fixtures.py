#!/usr/bin/env python
"""Rebuild the variant fixtures from ../mini.fa (real DNA) and the layout of the janggu sample VCF
(its header lines and samples; its records are rewritten for this small genome).

    python tests/data/variants/make_fixtures.py

genome.fa (+ .fai): chr2 = 2,000 nt of human chr22 (the mini.fa record 22:20608432-20611431, from its
base 1,001), chr7 = 1,500 nt of D. melanogaster chr4 (NC_004353.4, from base 1). variants.vcf: sorted
records covering SNV, multi-allelic, MNV, deletion, insertion, REF mismatch, IUPAC REF, symbolic,
spanning deletion, ALT = REF, no ALT and a too-long insertion. unknown_contig.vcf: one record on a
contig the genome lacks, beside a good one.
"""

from pathlib import Path

import pysam

HERE = Path(__file__).resolve().parent
HEADER = """##fileformat=VCFv4.2
##fileDate=20090805
##source=myImputationProgramV3.1
##INFO=<ID=NS,Number=1,Type=Integer,Description="Number of Samples With Data">
##INFO=<ID=DP,Number=1,Type=Integer,Description="Total Depth">
##INFO=<ID=AF,Number=A,Type=Float,Description="Allele Frequency">
##INFO=<ID=DB,Number=0,Type=Flag,Description="dbSNP membership, build 129">
##FILTER=<ID=q10,Description="Quality below 10">
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="Genotype Quality">
##contig=<ID=chr2,length=2000>
##contig=<ID=chr7,length=1500>
#CHROM	POS	ID	REF	ALT	QUAL	FILTER	INFO	FORMAT	NA00001	NA00002
"""
SAMPLES = "GT:GQ\t0|1:48\t1/1:43"


def other(base: str) -> str:
    return {"A": "G", "C": "T", "G": "A", "T": "C"}[base]


def main() -> None:
    with pysam.FastxFile(str(HERE.parent / "mini.fa")) as handle:
        records = {entry.name: entry.sequence.upper() for entry in handle}
    chr2 = records["22:20608432-20611431"][1000:3000]
    chr7 = records["NC_004353.4"][:1500]
    with open(HERE / "genome.fa", "w") as out:
        out.writelines(f">{name}\n" + "".join(seq[i : i + 60] + "\n" for i in range(0, len(seq), 60)) for name, seq in (("chr2", chr2), ("chr7", chr7)))
    pysam.faidx(str(HERE / "genome.fa"))

    def ref(chrom: str, pos: int, n: int = 1) -> str:
        seq = chr2 if chrom == "chr2" else chr7
        return seq[pos - 1 : pos - 1 + n]

    rows = []

    def add(chrom, pos, vid, r, alt, info="NS=2;DP=10", filt="PASS"):
        rows.append(f"{chrom}\t{pos}\t{vid}\t{r}\t{alt}\t50\t{filt}\t{info}\t{SAMPLES}")

    add("chr2", 1, "firstbase", ref("chr2", 1), other(ref("chr2", 1)), "NS=2;DP=14;DB")
    b = ref("chr2", 400)
    add("chr2", 400, "multi", b, ",".join(x for x in "ACGT" if x != b), "NS=2;DP=10;AF=0.1,0.2,0.3")
    r = ref("chr2", 520, 2)
    add("chr2", 520, "mnv", r, other(r[0]) + other(r[1]))
    add("chr2", 700, "deletion", ref("chr2", 700, 4), ref("chr2", 700))
    add("chr2", 800, "insertion", ref("chr2", 800), ref("chr2", 800) + "TATA")
    r = ref("chr2", 900, 4)
    add("chr2", 900, "microsat", r, f"{r[0]},{r[:2]}A{r[2:]}", "NS=2;DP=9;AF=0.5,0.5", "q10")
    add("chr2", 1000, "refmismatch", other(ref("chr2", 1000)), ref("chr2", 1000))
    add("chr2", 1010, "iupac", "M", "T")
    add("chr2", 1100, "symbolic", ref("chr2", 1100), "<DEL>", "NS=2;DP=9")
    b = ref("chr2", 1200)
    add("chr2", 1200, "star", b, f"{other(b)},*", "NS=2;DP=9;AF=0.5,0.5")
    add("chr2", 1300, "same", ref("chr2", 1300), ref("chr2", 1300))
    add("chr2", 1400, "noalt", ref("chr2", 1400), ".")
    add("chr2", 1500, "longins", ref("chr2", 1500), ref("chr2", 1500) + "ACGT" * 15)
    add("chr2", 1999, "lastbases", ref("chr2", 1999, 2), ref("chr2", 1999))
    add("chr7", 750, "chr7snv", ref("chr7", 750), other(ref("chr7", 750)))
    (HERE / "variants.vcf").write_text(HEADER + "\n".join(rows) + "\n")
    rows.clear()
    add("chr7", 100, "good", ref("chr7", 100), other(ref("chr7", 100)))
    add("chrUn", 50, "elsewhere", "A", "G")
    (HERE / "unknown_contig.vcf").write_text(HEADER.replace("##contig=<ID=chr7,length=1500>\n",
                                                            "##contig=<ID=chr7,length=1500>\n##contig=<ID=chrUn>\n")
                                             + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
