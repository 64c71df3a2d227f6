# Summarises the runs of bench/results/architecture-before-after.txt.
# Usage: architecture-before-after.py DIR   (DIR holds the runs' lib-base-N.csv and lib-new-N.csv)
import csv, glob, os, statistics, sys

DIR = sys.argv[1] if len(sys.argv) > 1 else '.'
def load(which):
    d={}
    for f in sorted(glob.glob(os.path.join(DIR, 'lib-%s-*.csv' % which))):
        for r in csv.DictReader(open(f)):
            if r.get('error'): continue
            k=(int(r['elements']), r['density'], r['algorithm'])
            d.setdefault(k,{'t':[], 's':[]})
            d[k]['t'].append(float(r['time_avg_us'])); d[k]['s'].append(float(r['speedup_vs_allreduce']))
    return d
b=load('base'); n=load('new')
print("%-10s %-6s %-20s %12s %12s %8s %10s %10s %8s" % ("elements","dens","method","base_us","new_us","t_ratio","base_xMPI","new_xMPI","x_ratio"))
for k in sorted(b):
    if k not in n or k[2]=='MPI_Allreduce': continue
    bt=statistics.median(b[k]['t']); nt=statistics.median(n[k]['t'])
    bs=statistics.median(b[k]['s']); ns=statistics.median(n[k]['s'])
    print("%-10d %-6s %-20s %12.0f %12.0f %8.2f %10.2f %10.2f %8.2f" % (k[0],k[1],k[2],bt,nt,nt/bt,bs,ns,ns/bs))
