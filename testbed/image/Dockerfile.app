FROM sparkkit-rehearsal-base:latest
COPY simlib.py /usr/local/lib/sparkkit-sim/simlib.py
COPY app /usr/local/bin/app-sim
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/app-sim"]
