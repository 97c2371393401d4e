# The Conveyor queue service, run from its TypeScript sources with tsx (no build step).
FROM node:20-bookworm-slim
WORKDIR /app
COPY . .
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
USER node
ENV PORT=8080
EXPOSE 8080
# `conveyor <command>`: start (API + background loops + relay), api, background, relay, migrate, …
ENTRYPOINT ["node", "--import", "tsx", "services/queue/src/main.ts"]
CMD ["start"]
