module example.com/bareroot/hello-go

go 1.19

require example.com/greeting v1.2.3
