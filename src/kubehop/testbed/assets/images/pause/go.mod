module kubehop.local/pause

go 1.22
