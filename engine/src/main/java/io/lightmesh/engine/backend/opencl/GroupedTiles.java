package io.lightmesh.engine.backend.opencl;

/**
 * The int table that the grouped expert kernels ({@code experts.cl}, {@code experts_tc.cl}) read: each expert's rows
 * of the grouped order cut into row tiles of at most {@link #TILE_ROWS}, one descriptor per tile (the expert's slot in
 * the set, the tile's first row, its row count), then the grouped order's token rows and pair indices. Work-group g
 * of a launch takes tile g / tilesN, so the launch has {@link #tiles()} * tilesN groups; experts with no rows have no
 * tiles.
 *
 * <p>Layout: {@code [slot, first, rows] * tiles | tokenRow[0 .. rows) | pairIndex[0 .. rows)}.
 */
record GroupedTiles(int[] table, int tiles, int rows) {
    /** Rows of a tile: the GEMMs' TM (tensorcore.cl) and GM (resident.cl), both 128. */
    static final int TILE_ROWS = 128;

    /** Where tokenRow starts in the table. */
    int tokenOffset() { return 3 * tiles; }

    /** Where pairIndex starts in the table. */
    int pairOffset() { return 3 * tiles + rows; }

    /**
     * The table for {@code groups} groups: group g is expert {@code slot[g]} over rows first[g] .. first[g] +
     * count[g] - 1 of the grouped order, whose first {@code rows} token rows and pair indices are given.
     */
    static GroupedTiles of(int groups, int[] slot, int[] first, int[] count, int[] tokenRow, int[] pairIndex, int rows) {
        if (tokenRow.length < rows || pairIndex.length < rows) {
            throw new IllegalArgumentException("tokenRow / pairIndex shorter than " + rows + " rows");
        }
        int tiles = 0;
        for (int g = 0; g < groups; g++) {
            if (count[g] < 0 || first[g] < 0 || first[g] + count[g] > rows) {
                throw new IllegalArgumentException("group " + g + ": rows " + first[g] + " + " + count[g] + " outside 0.." + rows);
            }
            tiles += (count[g] + TILE_ROWS - 1) / TILE_ROWS;
        }
        int[] table = new int[3 * tiles + 2 * rows];
        int at = 0;
        for (int g = 0; g < groups; g++) {
            for (int r = 0; r < count[g]; r += TILE_ROWS) {
                table[at++] = slot[g];
                table[at++] = first[g] + r;
                table[at++] = Math.min(TILE_ROWS, count[g] - r);
            }
        }
        System.arraycopy(tokenRow, 0, table, 3 * tiles, rows);
        System.arraycopy(pairIndex, 0, table, 3 * tiles + rows, rows);
        return new GroupedTiles(table, tiles, rows);
    }
}
